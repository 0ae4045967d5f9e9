"""deepasa.baselines"""
