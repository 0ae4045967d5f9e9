"""deepasa.model"""
