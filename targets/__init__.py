"""Where models run: the Target protocol, local/ssh/adb targets, runners and the device-side agent."""
