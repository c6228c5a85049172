"""Data recipes: a pile of documents turned into a training set that a person reviews before it trains.

documents (text out of PDF, DOCX, Markdown, HTML, TXT, zips) -> chunking (headings, paragraphs, a token
target, overlap) -> steps (prompt templates per kind of row) -> generators (an OpenAI-compatible endpoint or a
local model) -> kitchen (the background job, resumable) -> quality (duplicates, grounding, length, PII) ->
saving (a named dataset in the registry, with the recipe that made it).

The job is `python -m backend.recipe --config recipe.yaml`, in its own process group like a training job;
backend.recipes.jobs starts, watches and aborts it for the app.
"""
