"""agent/daemon"""
