#compdef itictl

_itictl_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _ITICTL_COMPLETE=complete_zsh itictl)
}

compdef _itictl_completion itictl
