"""deepasa.data"""
