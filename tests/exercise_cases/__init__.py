"""Learner code for testing the exercise graders: one module per exercise (exNN.py), each with

MISTAKES: (what the learner got wrong, "file.py:Class.method" or "file.py:function", the learner's
           version of that function, words the grader's failure must contain), at least three;
BYPASS:   ("file.py:...", a version that calls minidl's own code instead of computing).

The test copies the solution mydl, puts the learner's version in place of the function and grades.
"""
