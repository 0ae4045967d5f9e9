"""deepasa.train"""
