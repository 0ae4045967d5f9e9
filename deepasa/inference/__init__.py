"""deepasa.inference"""
