"""acestep_v1"""
