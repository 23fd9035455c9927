"""jointperception.runtime"""
