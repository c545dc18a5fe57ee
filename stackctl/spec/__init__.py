"""stackctl.spec"""
