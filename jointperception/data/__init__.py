"""jointperception.data"""
