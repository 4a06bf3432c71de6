"""acestep15"""
