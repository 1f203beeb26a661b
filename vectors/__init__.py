"""Golden vectors (JSON), produced only by ``vectors/generate.py`` from the C oracle.

Layout: ``<family>/<TYPE>.json``; format in ``docs/vectors.md``; schema in ``schema/``.
"""
