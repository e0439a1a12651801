"""ALFWorld (TextWorld) environment package: game data, parallel workers, action projection."""
