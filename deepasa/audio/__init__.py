"""deepasa.audio"""
