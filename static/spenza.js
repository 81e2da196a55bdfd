// Spenza dashboard behaviour.
