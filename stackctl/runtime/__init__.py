"""stackctl.runtime"""
