"""The Streamlit document Q&A app, split into small modules. Entry: apps/streamlit_app.py.

    config     presets, the `Settings` a user picks, building clients and the protocol (no Streamlit)
    fmt        pure formatting: dollars, pages, safe Markdown for untrusted model output, tables
    export     the downloadable run log, with secrets removed
    docs       loading uploads and bundled samples into Documents (cached per session)
    sidebar    the settings widgets
    live       rendering protocol events on the page while a run is going
    turns      rendering a finished question: answer, citations, cost panel, jobs, log download
"""
