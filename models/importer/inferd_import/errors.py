class ImportFailed(Exception):
    """A problem with the source or the request, explained for a person. The CLI prints it and
    exits 2; nothing is left in the model repository."""
