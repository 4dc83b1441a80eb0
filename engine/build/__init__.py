"""`rade build`: Containerfiles parsed into instructions, a build context filtered by .dockerignore, a step
cache keyed by (parent image, instruction, content copied), and the builder that runs each step as one
layer through the image store (RUN in a container of this runtime)."""
