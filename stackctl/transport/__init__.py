"""stackctl.transport"""
