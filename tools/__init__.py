"""Developer tools of the app: icon rendering and screenshots (not imported by the app itself)."""
