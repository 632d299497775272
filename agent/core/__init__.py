"""agent/core"""
