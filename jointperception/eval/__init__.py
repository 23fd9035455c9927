"""jointperception.eval"""
