"""stackctl.net"""
