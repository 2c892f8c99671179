"""optsearch.proxy_tasks"""
