"""jointperception.losses"""
