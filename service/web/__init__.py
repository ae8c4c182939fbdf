"""The instructor's HTML pages: server-rendered Jinja2, a signed session cookie, SVG charts."""
