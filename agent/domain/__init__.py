"""What is specific to one kind of catalog. MovieLens (films) is the one shipped today."""
