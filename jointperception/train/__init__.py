"""jointperception.train"""
