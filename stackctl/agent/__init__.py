"""stackctl.agent"""
