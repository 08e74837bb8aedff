"""taskfleet"""
