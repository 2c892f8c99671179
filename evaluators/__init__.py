"""optsearch.evaluators"""
