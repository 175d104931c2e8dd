"""The Greengrass v2 component: camera source → featurizer → gate → wire message → IoT Core."""
