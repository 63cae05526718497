"""Run comparison: terminal tables (compare.py) and the static HTML report with inline SVG plots (html.py)."""
