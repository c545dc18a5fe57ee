"""stackctl.scheduler"""
