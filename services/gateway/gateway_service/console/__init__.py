"""The web console: one static page, its script and style sheet, served by the gateway at /console.

The page holds no data: it signs in with an API key kept in the browser's session storage and
reads everything through the same JSON API every client uses, so it sees exactly what that key's
role and organization may see. No build step and no Node toolchain: plain HTML, CSS and a
dependency-free script; every value from the API is rendered as text (never as markup).
"""
