"""deepasa.scenes"""
