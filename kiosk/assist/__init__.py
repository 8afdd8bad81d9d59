"""What the resident gets beyond a video call: papers handed over the screen, staff marks, written conversation.

``messages`` (the data-channel messages, pure), ``marks`` (where a mark lands on screen; when the paper moved),
``channel`` (each side's state for one call, fed messages, sending through the call session).
"""
