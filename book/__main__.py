"""``python -m book``: build the web book into book/_build/html (see book/build.py)."""
from book.build import main

main()
