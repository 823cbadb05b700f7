"""Reports: self-contained HTML pages (Jinja2 templates, charts inlined as PNG data URIs)."""
