"""The minidet book: its pages, Sphinx configuration, build command (``python -m book``) and the
helpers its browser tests share. Not part of the installed package."""
