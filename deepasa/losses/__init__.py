"""deepasa.losses"""
