"""deepasa.metrics"""
