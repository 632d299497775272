"""agent/fleet"""
