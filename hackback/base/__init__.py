"""The ground floor: the Docker engine (the only module that talks to Docker), config, errors, logging, ownership, ELF and file facts."""
