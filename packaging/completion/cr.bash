# bash completion for cr(1)

_cr_handler_ids() {
    cr plugins 2>/dev/null | awk '/^[a-z]/ { print $1 }'
}

_cr() {
    local cur prev words cword
    _init_completion || return

    local commands="dump restore run check plugins inspect decode encode"
    if ((cword == 1)); then
        COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
        return
    fi

    local cmd=${words[1]}
    case $prev in
        -D | --images-dir | --image | --schemas)
            _filedir -d
            return
            ;;
        -t | --tree)
            COMPREPLY=($(compgen -W "$(command ls /proc 2>/dev/null | grep -E '^[0-9]+$')" -- "$cur"))
            return
            ;;
        --plugins)
            COMPREPLY=($(compgen -W "$(_cr_handler_ids)" -- "$cur"))
            return
            ;;
        --format)
            COMPREPLY=($(compgen -W "text json" -- "$cur"))
            return
            ;;
        --schema)
            COMPREPLY=($(compgen -W "CRMF CRMM CRTK CRFL CRPP CRSG" -- "$cur"))
            return
            ;;
        --bfbs)
            _filedir bfbs
            return
            ;;
        --section)
            local dir i
            for ((i = 2; i < cword; i++)); do
                [[ ${words[i]} == -D || ${words[i]} == --image ]] && dir=${words[i + 1]}
            done
            [[ -n $dir ]] && COMPREPLY=($(compgen -W "$(cd "$dir" 2>/dev/null && command ls -- *.cr 2>/dev/null)" -- "$cur"))
            return
            ;;
        --log | -o | --output)
            _filedir
            return
            ;;
        -v | --verbose)
            COMPREPLY=($(compgen -W "1 2" -- "$cur"))
            return
            ;;
    esac

    local opts
    case $cmd in
        dump) opts="--tree -t --images-dir -D --leave-running -R --plugins --skip-file-check --ext-unix-sk --verbose -v --help" ;;
        restore) opts="--images-dir -D --restore-detached -d --plugins --skip-file-check --verbose -v --help" ;;
        run) opts="--log --help --" ;;
        check) opts="--help" ;;
        plugins) opts="--plugins --help" ;;
        inspect) opts="--format --images-dir -D --help" ;;
        decode) opts="--bfbs --schemas --output -o --help" ;;
        encode) opts="--schema --bfbs --schemas --output -o --image -D --section --help" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    case $cmd in
        inspect) _filedir -d ;;
        decode) _filedir cr ;;
        encode) _filedir json ;;
        run) COMPREPLY=($(compgen -c -- "$cur")) ;;
    esac
} &&
    complete -F _cr cr
