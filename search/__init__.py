"""optsearch.search"""
