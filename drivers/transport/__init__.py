"""drivers/transport"""
