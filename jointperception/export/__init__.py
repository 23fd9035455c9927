"""jointperception.export"""
