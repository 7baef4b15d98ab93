"""Presentation: chart infrastructure, each phase's tables and charts, paper artifacts, widgets."""
