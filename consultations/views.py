"""Join and call views (issue 3 fills these in)."""

from django.http import HttpResponse


def join(request):
    return HttpResponse("join")


def call(request):
    return HttpResponse("call")
