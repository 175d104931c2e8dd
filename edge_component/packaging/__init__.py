"""Build and check the Greengrass component: gdk-config.json rules, recipe rules, artifact zip."""
