"""Shared constructed values of the VLM tests."""
from dualdrive.vlm.answer import Finding, SceneObject, VLMAnswer

ANSWER = VLMAnswer(
    road="urban", light="red",
    objects=(SceneObject("car", 20, "ahead", "in my lane"), SceneObject("pedestrian", 10, "ahead", "on the left"),
             SceneObject("ambulance", 35, "behind", "in the left lane")),
    analysis=(Finding("light", "red"), Finding("car", "stopped"), Finding("ambulance", "behind")),
    meta_actions=("slow down", "stop", "wait"), decision="stop at the red light",
    waypoints_m=((8, 0), (14, 0), (15, -1), (15, -1)))
