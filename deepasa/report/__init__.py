"""deepasa.report"""
